"""``chat``: the whole chat on one machine (``chat up``) and tokens for it (``chat token``)."""
