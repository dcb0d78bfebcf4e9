"""The DSD runtime: real draft and target processes that verify losslessly over ZeroMQ."""
