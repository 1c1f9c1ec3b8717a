"""What users type: submit, status, throttle/cancel/resubmit, deploy, and the local test bed."""
