"""What every stage shares: the Cluster model, errors (Diagnostic, ScoobyError), the
on-master layout and the package's own paths. Imports nothing else from scooby."""
