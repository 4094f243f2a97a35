"""P2C2R: community-shared game compute over WebSockets.

Layers (imports point downwards only):

    protocol, tasks/            pure: messages and kernels
    cloud/{scheduler,validation,ledger,lifecycle}   pure: decisions
    cloud/store                 disk (SQLite)
    workers                     sandboxed kernel processes (peers, cloud fallback, audits)
    cloud/server, peer/, gamer/ network
    game/, cli, demo            screen, argv
    netcheck, netsim, testing/  checking a deployment; the simulated three-host internet and its proxy
"""

__version__ = "0.1.0"
