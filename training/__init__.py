"""AiT training: stage 1 (VQ-VAE tokenizers) and stage 2 (task solver) on the transformers `Trainer`.

Entry points (run from the repository root; this package is not installed):

* ``python -m training.stage1 --preset NAME ...``: `training.stage1`;
* ``python -m training.stage2 --preset NAME ...``: `training.stage2`;

with presets in `training.presets` (one per original configuration, plus tiny ones), the optimiser and
schedules of the original recipes in `training.optim`, reproducible data in `training.data` and the
`Trainer` subclass in `training.trainer`. See the Training section of README.md.
"""
