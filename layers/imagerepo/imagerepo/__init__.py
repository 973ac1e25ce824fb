"""ImageRepo domain layer: shared by every Lambda function of the stack."""
