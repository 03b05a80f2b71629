"""Generated code for the ``pintu`` protobuf packages."""
