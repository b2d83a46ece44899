"""CDK constructs of orderflow: ``OrderflowStack`` composes one construct per capability."""
