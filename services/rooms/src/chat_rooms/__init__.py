"""The chat's rooms service: cluster-wide room membership and presence."""
