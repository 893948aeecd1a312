"""The analysis side: reads results directories and writes reports, plots and comparisons.

Torch-free by contract (tests/test_layers.py): it reads files through `results` and never imports torch,
`impls` or the run side, so a report renders on a machine that has only pandas and matplotlib.
"""
