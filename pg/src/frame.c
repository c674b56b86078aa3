/*
 * frame.c: the framed protocol between a worker's backend and its Node child (docs/in-server.md).
 */
#include "bgworker.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "port/pg_bswap.h"

void
frame_begin(StringInfo buf, char type)
{
	resetStringInfo(buf);
	appendBinaryStringInfo(buf, "\0\0\0\0", 4);
	appendStringInfoChar(buf, type);
}

void
frame_put_u8(StringInfo buf, uint8 v)
{
	appendStringInfoChar(buf, (char) v);
}

void
frame_put_u32(StringInfo buf, uint32 v)
{
	uint32		n = pg_hton32(v);

	appendBinaryStringInfo(buf, (char *) &n, 4);
}

void
frame_put_u64(StringInfo buf, uint64 v)
{
	frame_put_u32(buf, (uint32) (v >> 32));
	frame_put_u32(buf, (uint32) v);
}

void
frame_put_strn(StringInfo buf, const char *s, uint32 len)
{
	frame_put_u32(buf, len);
	appendBinaryStringInfo(buf, s, len);
}

void
frame_put_str(StringInfo buf, const char *s)
{
	if (s == NULL)
		frame_put_u32(buf, 0xFFFFFFFF);
	else
		frame_put_strn(buf, s, strlen(s));
}

void
frame_end(StringInfo buf)
{
	uint32		n = pg_hton32((uint32) (buf->len - 4));

	memcpy(buf->data, &n, 4);
}

static bool
frame_need(FrameReader *r, uint32 n)
{
	if (r->bad || r->len - r->pos < n)
	{
		r->bad = true;
		return false;
	}
	return true;
}

uint8
frame_get_u8(FrameReader *r)
{
	if (!frame_need(r, 1))
		return 0;
	return (uint8) r->data[r->pos++];
}

uint32
frame_get_u32(FrameReader *r)
{
	uint32		n;

	if (!frame_need(r, 4))
		return 0;
	memcpy(&n, r->data + r->pos, 4);
	r->pos += 4;
	return pg_ntoh32(n);
}

uint64
frame_get_u64(FrameReader *r)
{
	uint64		hi = frame_get_u32(r);

	return (hi << 32) | frame_get_u32(r);
}

char *
frame_get_str(FrameReader *r)
{
	uint32		len = frame_get_u32(r);
	char	   *s;

	if (r->bad || len == 0xFFFFFFFF)
		return NULL;
	if (!frame_need(r, len))
		return NULL;
	s = palloc(len + 1);
	memcpy(s, r->data + r->pos, len);
	s[len] = '\0';
	r->pos += len;
	return s;
}

bool
frame_write_all(int fd, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = send(fd, data, len, MSG_NOSIGNAL);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			return false;
		}
		data += n;
		len -= n;
	}
	return true;
}
