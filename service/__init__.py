"""labrec: lab-order recommendations and reliable hand-off to an external FHIR lab."""
