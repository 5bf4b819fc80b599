"""Protocol constants of hamletnet's bandwidth test, each with its unit and source.

Shared by the probe engines (``probes/bandwidth``) and the measurement target
(``server/target``), so both sides agree on paths and limits (the layout of ndt7-client-go's
``internal/params/params.go``). Every transfer has a whole-test and a per-I/O timeout.
"""

from __future__ import annotations

from typing import Final

# -- The test (methodology.md, "What hamletnet should adopt" item 2) ------------------------------
#: Parallel TCP connections per direction: SamKnows recommends 3 (methodology.md §4).
DEFAULT_STREAMS: Final = 3
#: Measured duration per direction after the warm-up, seconds: a 10 s sample as in QCVN 34
#: §2.1.2.1's "one transfer" and ndt7's 10 s (methodology.md §3).
DEFAULT_DURATION_S: Final = 10.0
#: Throughput is sampled this often from the kernel's TCP_INFO counters, milliseconds.
SAMPLE_INTERVAL_MS: Final = 100.0
#: Warm-up detection (``throughput.warmup_end``): rates over windows of this many samples
#: (0.5 s at 100 ms) are compared with the window before.
WARMUP_WINDOW_SAMPLES: Final = 5
#: Two successive windows within this fraction of each other mean TCP has left slow start.
WARMUP_STABLE_FRACTION: Final = 0.10
#: The warm-up never ends before this, seconds (two full windows).
WARMUP_MIN_S: Final = 1.0
#: ... and always ends here, stable or not, seconds; the result records how long it took.
WARMUP_MAX_S: Final = 4.0
#: Loaded latency: one TCP-connect RTT to the target this often during a transfer, seconds
#: (Cloudflare pings at most every 400 ms during transfers; methodology.md §3).
LOADED_LATENCY_INTERVAL_S: Final = 0.2
#: Idle latency: this many TCP-connect RTTs before the first transfer.
IDLE_LATENCY_COUNT: Final = 5
#: A process that uses this share of one core is flagged ``cpu_limited``: CPython runs
#: bytecode on one core at a time (the GIL), so near 100 % of one core the probe, not the line,
#: may be the bottleneck. 90 % is hamletnet's choice.
CPU_LIMITED_PERCENT: Final = 90.0
#: ``host_limited`` when the sender was receive-window or send-buffer limited for more than this
#: share of the test (TCP_INFO RWndLimited + SndBufLimited; methodology.md adopt item 2).
HOST_LIMITED_FRACTION: Final = 0.10

# -- Timeouts -------------------------------------------------------------------------------------
#: TCP connect to the target, seconds.
CONNECT_TIMEOUT_S: Final = 5.0
#: A stream that moves no byte for this long has stalled (SO_RCVTIMEO / SO_SNDTIMEO), seconds.
IO_TIMEOUT_S: Final = 5.0
#: Reading the HTTP response head of a stream, bytes at most.
MAX_HEAD_BYTES: Final = 16 * 1024

# -- Buffers --------------------------------------------------------------------------------------
#: One reusable receive buffer per stream; with MSG_TRUNC the kernel discards the bytes without
#: copying them (tcp(7)), so its size only bounds one recv call, bytes.
RECV_BUFFER_BYTES: Final = 1024 * 1024
#: SO_RCVLOWAT of a download stream: a blocked recv wakes once this much has arrived instead of
#: once per packet, which cuts the wake-ups (and CPU) at low rates. TCP still acknowledges every
#: segment on arrival, and throughput is sampled from TCP_INFO, so neither depends on it, bytes.
RECV_LOWAT_BYTES: Final = 64 * 1024
#: Random payload both sides send with sendfile(2) from an in-memory file (memfd), bytes. Random,
#: so no compressing middlebox can inflate the figure; repeated, so it costs nothing per byte.
#: The target makes its file once, at start-up.
PAYLOAD_FILE_BYTES: Final = 8 * 1024 * 1024
#: The probe's upload file, made for each upload test: its random bytes are the one cost of the
#: payload that a test pays whatever the rate (``os.urandom``, about 5 ms of CPU per MiB here), so
#: it is small, as ndt7's 1 MiB upload message is. A file shorter than what the socket holds in
#: flight is fine: sendfile(2) lends the same pages to the send queue as often as needed, bytes.
UPLOAD_PAYLOAD_BYTES: Final = 1024 * 1024
#: Bytes one sendfile(2) call may move, bytes.
SENDFILE_CHUNK_BYTES: Final = 4 * 1024 * 1024
#: Content-Length the probe announces for an upload and asks for on a download: larger than any
#: test moves (1 TB, ≈ 2.2 h at 1 Gb/s); the probe ends the transfer by closing, bytes.
ENDLESS_BYTES: Final = 10**12

# -- Target paths and the slot coordinator ------------------------------------------------------
DOWNLOAD_PATH: Final = "/download"
UPLOAD_PATH: Final = "/upload"
LATENCY_PATH: Final = "/latency"
SLOT_PATH: Final = "/slot"
#: Query parameter (and header) that ties a transfer to its slot lease.
LEASE_PARAM: Final = "lease"
LEASE_HEADER: Final = "X-Hamletnet-Lease"
#: Longest slot the target grants, seconds (two directions of the longest warm-up and test).
MAX_SLOT_S: Final = 120.0
#: How long a probe waits for a busy target before it gives up and reports "deferred", seconds.
DEFAULT_SLOT_WAIT_S: Final = 60.0

# -- Speedtest Mini (the protocol speedtest-cli speaks; legacy Ookla servers) -------------------
#: Sizes of Ookla's legacy ``random{N}x{N}.jpg`` download files, bytes, by N. speedtest-cli
#: fetches each 4 times (``threadsperurl``), ≈ 409 MB in all.
SPEEDTEST_IMAGE_BYTES: Final = {
    350: 245_388,
    500: 505_544,
    750: 1_118_012,
    1000: 1_986_284,
    1500: 4_468_241,
    2000: 7_907_740,
    2500: 12_407_926,
    3000: 17_816_816,
    3500: 24_262_167,
    4000: 31_625_365,
}
#: speedtest-cli's per-direction time limit when the configuration does not set one, seconds.
SPEEDTEST_TEST_LENGTH_S: Final = 10

# -- LibreSpeed backend -------------------------------------------------------------------------
#: garbage.php sends ``ckSize`` chunks of this size (default 4, at most 1024), bytes.
LIBRESPEED_CHUNK_BYTES: Final = 1024 * 1024
LIBRESPEED_DEFAULT_CHUNKS: Final = 4
LIBRESPEED_MAX_CHUNKS: Final = 1024
