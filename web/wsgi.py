"""The WSGI entry point gunicorn serves: `gunicorn web.wsgi:app`."""

from shared.config import get_settings
from shared.ops.heap import freeze_startup_heap
from shared.ops.logs import configure_logging
from web import create_app

settings = get_settings()
configure_logging(settings.log_format)
app = create_app(settings)
freeze_startup_heap()
