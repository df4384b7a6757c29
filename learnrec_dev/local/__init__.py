"""Running learnrec's AWS parts on one machine: the local AWS, the gateway, the poller."""
