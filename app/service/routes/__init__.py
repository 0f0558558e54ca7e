"""HTTP routes of the StructCore service, one module per resource."""
