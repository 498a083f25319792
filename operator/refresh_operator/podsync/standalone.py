"""podSync on its own: ``kopf run --standalone -n NS -m refresh_operator.podsync.standalone``.

The entry point for running podSync without the operator core (its e2e tests do). Like the operator's
``cli.main``, it is a composition root: it reads the operator's settings (so CONFIG_REFRESH_QUEUE_URL is
required here too) and registers podSync's handlers on kopf's default registry, with the operator's
Kubernetes client and ``asyncio.to_thread`` for blocking calls. Nothing else imports it.
"""

from __future__ import annotations

import asyncio

import kopf

from refresh_operator.kube import Kube
from refresh_operator.podsync.handlers import register
from refresh_operator.settings import load_settings

register(kopf.get_default_registry(), load_settings(), kube_api=Kube(), run=asyncio.to_thread)
