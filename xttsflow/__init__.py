"""xttsflow: turn a speaker's recordings into a fine-tuned Coqui XTTS-v2 voice."""

__version__ = "0.1.0"

#: XTTS reads training audio at this rate (its DVAE and mel front end) ...
TRAIN_SAMPLE_RATE = 22050
#: ... and its HiFi-GAN decoder writes speech at this one.
OUTPUT_SAMPLE_RATE = 24000
#: XTTS's trainer drops clips longer than this many samples at TRAIN_SAMPLE_RATE (~11.6 s).
XTTS_MAX_WAV_SAMPLES = 255995
