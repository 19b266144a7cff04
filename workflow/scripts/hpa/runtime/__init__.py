"""What every GPU job runs on: device, loader, ranks, GPU lease, checkpoint reading, the job that travels to ranks."""
