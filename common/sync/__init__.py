"""The sync engine: scan a tree, read and piece files, ship commits, collect garbage."""
