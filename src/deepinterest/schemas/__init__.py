"""Artifact schemas: each artifact's stage name, file names and one reader.

Stages meet only through artifacts on disk and never import each other; an
artifact's layout therefore lives here, below every stage, and the stage
that writes it and the stages that read it share these names and readers.
"""
