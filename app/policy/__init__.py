"""The one inference path: load a trained policy and run it on batches of observations.

Used by backtests, Serve and (soon) the trader and the game, so they agree on what the policy
does with the same inputs.
"""
