package source

// Rank returns the rank, in [0, worldSize), that owns key. The hash is FNV-1a over the key followed by
// a 64-bit finaliser (murmur3's fmix64): FNV alone spreads short, similar keys (file names that differ
// in one digit) poorly in its low bits, which modulo uses. It is stable across processes and machines.
func Rank(key string, worldSize int) int {
	if worldSize <= 1 {
		return 0
	}
	return int(Hash64(key) % uint64(worldSize))
}

// Hash64 is the well-spread, stable 64-bit hash used for dispatch.
func Hash64(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
