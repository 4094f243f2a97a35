"""Test and simulation aids that are shipped with the package (``test_network.py --simulate`` uses them).

    proxy       LinkProxy / ThreadedLinkProxy: a user-space TCP link with latency, jitter, a bandwidth cap
                and cuts on command
"""
