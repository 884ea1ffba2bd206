package source

// Every skip reason of the loader: the counters of Stats and the reason of a skip report. Nothing
// else defines one; README's tables list the same set.
const (
	ReasonReadError       = "read_error"         // the bytes could not be read (IO error, transport failure)
	ReasonEmpty           = "empty"              // the file, body or image member has no bytes
	ReasonTooLarge        = "too_large"          // larger than max_file_bytes, or an image over max_pixels
	ReasonDecodeError     = "decode_error"       // the bytes are not an image datago can decode
	ReasonInternal        = "internal_error"     // a bug met by one sample (a recovered panic)
	ReasonNoBatch         = "no_image_for_batch" // a sample without a main image cannot join a batch
	ReasonNotFound        = "not_found"          // dataroom: a file download answered 404 or 410; storage: a listed object no longer exists
	ReasonHTTPError       = "http_error"         // dataroom: a file download answered another error status
	ReasonBadRecord       = "bad_record"         // dataroom: a result without id, image URL, or with fields of the wrong type
	ReasonDuplicate       = "duplicate"          // dataroom: an id the server had already returned on the previous page
	ReasonShardError      = "shard_error"        // webdataset: a shard could not be read (to its end)
	ReasonLost            = "lost"               // webdataset: a sample lost with a broken, truncated or corrupt part of a shard
	ReasonMissingImage    = "missing_image"      // webdataset: a sample without a member named by image_keys
	ReasonBadMetadata     = "bad_metadata"       // webdataset: a .cls that is not an integer, a .json that is not JSON
	ReasonDuplicateMember = "duplicate_member"   // webdataset: two members of one sample with the same suffix
)
