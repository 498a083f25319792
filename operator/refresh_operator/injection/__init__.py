"""Sidecar injection (issue 21): a mutating admission webhook that adds config-service to pods that ask.

- ``template``: the sidecar template (image, resources, security context, probes, ports) the operator
  chart renders from the config-service chart's defaults into a ConfigMap.
- ``patch``: the annotations a pod asks with (``InjectionRequest``) and the pure builder: pod +
  ConfigRoute + template -> the mutated pod (kopf diffs it into a JSONPatch).
- ``settings``: the webhook's settings from the environment (``CONFIG_REFRESH_INJECTION_*``).
- ``webhook``: the kopf registration (``@kopf.on.mutate`` on pods, an index of ConfigRoutes, the
  WebhookServer); ``register(registry, settings)`` is called from the composition root.
"""
