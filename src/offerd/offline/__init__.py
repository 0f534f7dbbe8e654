"""Work over whole populations, off the request path: population files, simulations and
their reports, outbound batches. Built on the engine; the server and the CLI use it."""
