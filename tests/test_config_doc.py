"""docs/configuration.md is the settings table, rendered: every setting, its default and help."""

import re

from core.settings import SETTINGS
from tools import config_doc


def test_the_configuration_page_is_generated_from_the_settings_table():
    assert config_doc.PAGE.read_text() == config_doc.render(), "run python tools/config_doc.py"


def test_every_setting_has_a_row_with_its_default():
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", config_doc.render(), re.MULTILINE))
    assert set(rows) == {s.name for s in SETTINGS}
    assert rows["PORT"].strip() == "`5050`" and rows["WARM_UP"].strip() == "`true`"
    assert rows["PUBLIC_URL"].strip() == "(empty)"


def test_check_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n")
    monkeypatch.setattr(config_doc, "PAGE", stale)
    assert config_doc.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert config_doc.main([]) == 0 and config_doc.main(["--check"]) == 0
