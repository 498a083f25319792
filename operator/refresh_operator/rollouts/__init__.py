"""ConfigRefresh rollouts: a short orchestrator over a status writer, supersession and a wave runner.

- `orchestrator`: `Rollouts`, called by the kopf handlers (admits the route, settles the version);
- `execution`: one rollout's fan-out from discovery to its final status;
- `wave_runner`: the wave loop over `waves.py`, halting on a failed wave or health gate;
- `departures`: a failed target that left Cloud Map during the rollout is recorded Gone, not Failed;
- `status_writer`: throttled progress patches and the final status;
- `supersession`: newer rollouts of a parameter take over from older ones;
- `model`: the typed ConfigRefresh spec and subject the others work on.

The protobuf and policy mapping lives in `refresh_operator.fanout.mapping`.
"""

from refresh_operator.rollouts.model import EventPoster, RetryLater
from refresh_operator.rollouts.orchestrator import Rollouts

__all__ = ["EventPoster", "RetryLater", "Rollouts"]
