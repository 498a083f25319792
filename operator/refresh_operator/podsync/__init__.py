"""Cloud Map kept in step with EKS pods ("synced from EKS", issue 6).

A ConfigRoute with ``spec.podSync`` makes the operator watch the pods its selector picks in the route's
namespace and mirror them into the route's Cloud Map service: Ready pods registered and HEALTHY, not-Ready
or terminating pods UNHEALTHY, deleted pods deregistered, and a periodic reconcile that repairs drift both
ways. The fan-out then trusts ``DiscoverInstances(HealthStatus=HEALTHY)`` without a second controller.

Layers, each importable without the one above it:

- ``model``: pure functions from a pod and a route to the instance Cloud Map should hold.
- ``reconcile``: pure planning (desired vs. actual → actions) and the executor that applies a plan.
- ``refresh_operator.cloudmap``: the only code that talks to Cloud Map (``Registrar`` for podSync).
- ``status``: the route's ``CloudMapSynced`` condition and counts, as a server-side apply body.
- ``kube``: the pod list and the status apply, over the operator's one Kubernetes client.
- ``state``, ``flusher``, ``controller``: per-route state, the debounced status writes, and the
  controller (route index, pod fast path, reconcile) tying the above together.
- ``handlers``: ``register(registry, settings, …)``, called by the operator's composition root (or by
  ``standalone``, which runs podSync alone); nothing is registered or read at import.
"""
