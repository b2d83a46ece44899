"""Projections (CQRS read models): the order list, built from the order events on the bus."""
