#!/bin/bash
# Seed inputs for the `files` fuzz target: small filesystems made by their
# own tools, populated without a mount (debugfs, ntfscp, mtools): ext2,
# ext4 with and without a journal, FAT12, FAT16, FAT32 and NTFS, each with
# a directory, a file, a symlink where the filesystem has them, and one
# disk with an MBR table holding a FAT partition. Each seed is stored as the
# target reads its input, sparse (a FAT32 volume is at least 32 MiB, nearly
# all of them zero): the disk's length, then chunks of (offset, length,
# bytes); u64 and u32 little-endian. Usage:
#   fuzz/make-files-seeds.sh DIR
# Needs e2fsprogs, dosfstools, mtools, ntfs-3g and fdisk.
set -euo pipefail
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'hello, world\n' >"$tmp/hello.txt"
head -c 9000 /dev/zero | tr '\0' 'x' >"$tmp/big.txt"

seed() { # IMAGE: write it to $out as a seed
    python3 - "$1" "$out/$(basename "$1")" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
out = bytearray(struct.pack('<Q', len(data)))
sectors = [data[i:i + 512] for i in range(0, len(data), 512)]
i = 0
while i < len(sectors):
    if not any(sectors[i]):
        i += 1
        continue
    j = i  # a chunk: non-zero sectors, taking in gaps of under 4 zero ones
    while j < len(sectors) and any(any(s) for s in sectors[j:j + 4]):
        j += 1
    body = data[i * 512:j * 512].rstrip(b'\0')
    out += struct.pack('<QI', i * 512, len(body)) + body
    i = j
open(sys.argv[2], 'wb').write(out)
PY
}

ext() { # NAME SIZE MKFS-ARGS...
    local img=$tmp/$1.img
    truncate -s "$2" "$img"
    shift 2
    mkfs.ext4 -q -F -b 1024 -N 32 "$@" "$img"
    debugfs -w -f - "$img" >/dev/null 2>&1 <<CMDS
mkdir docs
write $tmp/hello.txt docs/hello.txt
write $tmp/big.txt big.txt
symlink link docs/hello.txt
ea_set docs/hello.txt user.origin seed
CMDS
    seed "$img"
}
ext ext4-nojournal 256K -O ^has_journal
ext ext4-journal 4M -J size=1
ext ext2 256K -t ext2

fat() { # NAME SIZE FAT-BITS (one sector per cluster: the smallest volumes)
    local img=$tmp/$1.img
    truncate -s "$2" "$img"
    mkfs.vfat -F "$3" -s 1 -n SEED "$img" >/dev/null
    mmd -i "$img" ::/docs
    mcopy -i "$img" "$tmp/hello.txt" ::/docs/hello.txt
    mcopy -i "$img" "$tmp/big.txt" "::/A long name.txt"
    seed "$img"
}
fat fat12 128K 12
fat fat16 8M 16
fat fat32 33M 32

# A hashed (dir_index) directory: 120 names in 1 KiB blocks.
big=$tmp/ext4-htree.img
truncate -s 512K "$big"
mkfs.ext4 -q -F -b 1024 -N 160 -O ^has_journal "$big"
{ echo "mkdir many"; for i in $(seq 120); do echo "write $tmp/hello.txt many/file-with-a-long-name-$i"; done; } |
    debugfs -w -f - "$big" >/dev/null 2>&1
seed "$big"

ntfs=$tmp/ntfs.img
truncate -s 2M "$ntfs"
mkntfs -q -F -f -s 512 -c 512 -L SEED "$ntfs" >/dev/null 2>&1
ntfscp -q "$ntfs" "$tmp/hello.txt" hello.txt
ntfscp -q "$ntfs" "$tmp/big.txt" big.txt
seed "$ntfs"

mbr=$tmp/mbr-fat12.img
truncate -s 192K "$mbr"
echo 'start=64, size=256, type=1' | sfdisk -q "$mbr"
truncate -s 128K "$tmp/part.img"
mkfs.vfat -F 12 "$tmp/part.img" >/dev/null
mcopy -i "$tmp/part.img" "$tmp/hello.txt" ::/hello.txt
dd if="$tmp/part.img" of="$mbr" bs=512 seek=64 conv=notrunc status=none
seed "$mbr"

gpt=$tmp/gpt-ext2.img
truncate -s 400K "$gpt"
echo 'start=64, size=640, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"' | sfdisk -q -X gpt "$gpt"
truncate -s 320K "$tmp/ext2p.img"
mkfs.ext4 -q -F -t ext2 -b 1024 -N 16 "$tmp/ext2p.img"
debugfs -w -R "write $tmp/hello.txt hello.txt" "$tmp/ext2p.img" >/dev/null 2>&1
dd if="$tmp/ext2p.img" of="$gpt" bs=512 seek=64 conv=notrunc status=none
seed "$gpt"
ls -la "$out"
