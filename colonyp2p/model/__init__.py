"""The colony's data model: function specs, processes, workflows, membership, executor ads."""
