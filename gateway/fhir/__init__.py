"""The FHIR R4 interface (HL7 Da Vinci CDex task-based requests, SMART Backend Services): a translation onto
the intake services, with no FHIR storage of its own beyond which request a Task is and which client sent it."""
