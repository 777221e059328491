"""The gevent runtime: the per-call worker (the only code that touches a media stream's socket), the
thread pools that keep blocking work off the hub, the hub monitor, keeping and filing calls, this
process among others on the store, retention, metrics and the pywsgi glue. ``handlers/`` holds the
Flask routes that hand work to it; ``core/`` and ``audio/`` are the sans-I/O parts it drives."""
