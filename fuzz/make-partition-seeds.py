#!/usr/bin/env python3
"""Seed inputs for the `partitions` fuzz target: small disks (64 KiB) with
MBR tables (primaries, an extended partition with logicals, a looping EBR
chain), GPT tables (128- and 256-byte entries, a bad primary header), and
the signatures the volume probe looks for. Usage: make-partition-seeds.py DIR"""
import struct, sys, zlib, os

SECTORS = 128
def disk(): return bytearray(SECTORS * 512)

def slot(d, base, i, typ, start, count, boot=0):
    at = base + 446 + 16 * i
    d[at] = boot
    d[at + 4] = typ
    d[at + 8:at + 16] = struct.pack('<II', start, count)
    d[base + 510:base + 512] = b'\x55\xaa'

def gpt(entry_len=128, bad_primary=False):
    d = disk()
    slot(d, 0, 0, 0xee, 1, SECTORS - 1)
    n = 8
    arr = bytearray(entry_len * n)
    for i, (first, last) in enumerate([(34, 63), (64, 90)]):
        e = i * entry_len
        arr[e:e + 16] = bytes([0xaf]) * 16
        arr[e + 16:e + 32] = bytes([i + 1]) * 16
        arr[e + 32:e + 48] = struct.pack('<QQ', first, last)
        name = 'p%d' % (i + 1)
        arr[e + 56:e + 56 + 2 * len(name)] = name.encode('utf-16-le')
    sectors_arr = (len(arr) + 511) // 512
    for my, alt, alba in [(1, SECTORS - 1, 2), (SECTORS - 1, 1, SECTORS - 1 - sectors_arr)]:
        h = bytearray(92)
        h[0:8] = b'EFI PART'
        struct.pack_into('<IIIIQQQQ', h, 8, 0x10000, 92, 0, 0, my, alt, 34, SECTORS - 34)
        struct.pack_into('<QII', h, 72, alba, n, entry_len)
        struct.pack_into('<I', h, 88, zlib.crc32(arr))
        struct.pack_into('<I', h, 16, zlib.crc32(bytes(h)))
        d[my * 512:my * 512 + 92] = h
        d[alba * 512:alba * 512 + len(arr)] = arr
    if bad_primary:
        d[512 + 40] ^= 1
    return d

def seeds():
    yield 'zeros', disk()
    d = disk(); slot(d, 0, 0, 0x83, 8, 32, 0x80); slot(d, 0, 1, 0x07, 40, 40); yield 'mbr-two', d
    d = disk(); slot(d, 0, 0, 0x83, 8, 16); slot(d, 0, 1, 0x05, 32, 96)
    slot(d, 32 * 512, 0, 0x83, 4, 16); slot(d, 32 * 512, 1, 0x05, 24, 40)
    slot(d, 56 * 512, 0, 0x0c, 4, 30); yield 'mbr-logicals', d
    d = bytearray(d); slot(d, 56 * 512, 1, 0x05, 0, 96); yield 'mbr-ebr-loop', d
    yield 'gpt-128', gpt()
    yield 'gpt-256', gpt(256)
    yield 'gpt-bad-primary', gpt(bad_primary=True)
    d = disk(); d[510:512] = b'\x55\xaa'; d[446] = 0x3c; d[3:11] = b'MSDOS5.0'; yield 'fat-boot-sector', d
    d = disk(); d[1024 + 0x38:1024 + 0x3a] = b'\x53\xef'; d[1024 + 0x60] = 0x46; yield 'ext4-magic', d
    d = disk(); d[3:11] = b'NTFS    '; yield 'ntfs-oem', d
    d = disk(); d[0:6] = b'LUKS\xba\xbe'; yield 'luks', d
    d = disk(); d[4086:4096] = b'SWAPSPACE2'; yield 'swap', d

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, d in seeds():
    open(os.path.join(out, name), 'wb').write(bytes(d))
