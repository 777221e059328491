"""The Flask routes: voice webhooks, the media stream route, the call history pages and API, the
login and request signatures. They check the request and hand the work to ``runtime/``."""
