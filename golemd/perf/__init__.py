"""Speed tricks the daemon plugs in: polling before sleeping, corking replies, small reads."""
