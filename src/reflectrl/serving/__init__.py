"""Inference servers for the frozen reflector, started and stopped by reflectrl.

* `managed.ManagedServer`: one server as a child process on a free loopback
  port, with health wait, a log file, and a stop on exit, Ctrl-C or the
  parent's death.
* `engines`: the command lines of llama.cpp's and vLLM's OpenAI-compatible servers.
* `reflector_server.start_reflector_server`: export a trained reflector and serve it.
"""
