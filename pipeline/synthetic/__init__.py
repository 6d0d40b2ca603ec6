"""The synthetic MIMIC-CXR-JPG 2.1.0 generator (the default data source; see `generate`)."""
