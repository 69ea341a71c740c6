"""The composition root: the whole config assembled from every section, and the parameter text
of every stage's form. Only entry points (KFP component bodies, pipelines/) import it."""
