"""Writes one record batch that no consumer can decode to a Kafka topic partition: a v2
batch marked zstd-compressed whose payload is not zstd. Speaks the Kafka protocol directly
(Produce v3), since no client library sends a batch it cannot itself build."""
import socket, struct, sys, time

def crc32c(data: bytes) -> int:
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

def batch(payload: bytes, count: int) -> bytes:
    now = int(time.time() * 1000)
    # attributes .. records: what the CRC covers
    body = struct.pack(">hiqqqhii", 4, count - 1, now, now, -1, -1, -1, count) + payload
    crc = crc32c(body)
    after_length = struct.pack(">ibI", 0, 2, crc) + body  # leader epoch, magic, crc
    return struct.pack(">qi", 0, len(after_length)) + after_length

def produce(host: str, port: int, topic: str, partition: int) -> int:
    records = batch(b"\x00not zstd at all\xff" * 4, 3)
    t = topic.encode()
    body = struct.pack(">hhi", -1, -1, 10000)  # transactional id null, acks all, timeout
    body += struct.pack(">i", 1) + struct.pack(">h", len(t)) + t
    body += struct.pack(">i", 1) + struct.pack(">i", partition)
    body += struct.pack(">i", len(records)) + records
    client = b"corrupt-batch"
    header = struct.pack(">hhih", 0, 3, 1, len(client)) + client
    msg = header + body
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", s.recv(4))[0]
    data = b""
    while len(data) < size:
        data += s.recv(size - len(data))
    s.close()
    # correlation id, topics[1]: name, partitions[1]: partition, error code, base offset
    pos = 4 + 4
    (nlen,) = struct.unpack(">h", data[pos:pos + 2]); pos += 2 + nlen
    pos += 4
    part, err, base = struct.unpack(">ihq", data[pos:pos + 14])
    return err

if __name__ == "__main__":
    host, port = sys.argv[1].rsplit(":", 1)
    err = produce(host, int(port), sys.argv[2], int(sys.argv[3]))
    print(f"error_code={err}")
    sys.exit(0 if err == 0 else 1)
