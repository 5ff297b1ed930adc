{
  "targets": [
    {
      "target_name": "snapback_io",
      "sources": ["snapback-io.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-lpthread"]
    }
  ]
}
