"""Jobs on Ray Serve replicas, in three processes kept apart: the daemon's side
(``dispatch``), the agent that is the Ray driver (``agent``) and the replica (``replica``)."""
