"""Fleet-scale bag processing on Ray: many bags, many workers, one report, nothing lost.

``vimpnet-ros fleet`` cuts every camera topic of every input bag into work units
(bag, topic, time segment; :mod:`.plan`), runs them on Ray actors that each hold one
loaded engine (:mod:`.worker`), merges each bag's units into a derained output bag and
its report once all of them are done (:mod:`.merge`) and writes one fleet report
(:mod:`.report`). :func:`.run.run_fleet` drives it; a rerun over the same output folder
skips finished units.
"""

from __future__ import annotations

#: Default work-unit length [s of bag time]: long enough that the warm-up is a small overhead, short enough to spread.
#: Here, not in :mod:`.plan`, so the command line's help needs no bag or model imports.
DEFAULT_SEGMENT_S = 60.0
