"""Everything that knows Kubernetes, Spark masters and images: the API client and its 404 rule,
the ported admission webhooks, SDK validation, the InferenceService and SparkApplication builders."""
