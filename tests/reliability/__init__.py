"""Reliability and security tests: hostile input, crashes, contention, failing servers, secrets."""
