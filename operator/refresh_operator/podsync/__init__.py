"""Cloud Map kept in step with EKS pods ("synced from EKS", issue 6).

A ConfigRoute with ``spec.podSync`` makes the operator watch the pods its selector picks in the route's
namespace and mirror them into the route's Cloud Map service: Ready pods registered and HEALTHY, not-Ready
or terminating pods UNHEALTHY, deleted pods deregistered, and a periodic reconcile that repairs drift both
ways. The fan-out then trusts ``DiscoverInstances(HealthStatus=HEALTHY)`` without a second controller.

Layers, each importable without the one above it:

- ``model``: pure functions from a pod and a route to the instance Cloud Map should hold.
- ``reconcile``: pure planning (desired vs. actual → actions) and the executor that applies a plan.
- ``cloudmap``: the only module that talks to Cloud Map (async, throttling backoff, operation tracking).
- ``status``: the route's ``CloudMapSynced`` condition and counts, written by server-side apply.
- ``controller``: in-memory state (route index, known instances, locks) tying the above together.
- ``handlers``: the kopf registration; importing it is what wires podSync into an operator.
"""
