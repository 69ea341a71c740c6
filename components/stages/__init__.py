"""The pipeline's steps, one folder each: config, pure core, executor (store I/O), KFP component."""
