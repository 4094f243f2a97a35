"""P2C2R: community-shared game compute over WebSockets.

Layers (imports point downwards only):

    protocol, tasks/            pure: messages and kernels
    cloud/{scheduler,validation,ledger,lifecycle}   pure: decisions
    cloud/store                 disk (SQLite)
    cloud/server, peer/, gamer/ network
    game/, cli                  screen, argv
"""

__version__ = "0.1.0"
