"""gunicorn settings for agegate: `gunicorn -c config/gunicorn.conf.py wsgi:app`.

The settings themselves live in the package (agegate/gunicorn_conf.py), so that
`agegate serve` finds them from any folder; this file is for running gunicorn by hand.
Every value can be changed with the environment variable named beside it there.
"""

from agegate.gunicorn_conf import *  # noqa: F403
