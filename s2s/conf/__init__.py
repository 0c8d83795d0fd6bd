"""The packaged Hydra configs (YAML groups), found by Hydra as pkg://s2s.conf; a package so that importlib finds it."""
