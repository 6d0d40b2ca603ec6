"""The raw-release layer: MIMIC-CXR-JPG / MIMIC-CXR file layout, schema-checked readers, sections, labels."""
