<?php

declare(strict_types=1);

namespace LiveComments;

/**
 * The product's own storage, outside the gateway: the comments of each video
 * (so that a page can refetch after a `gap`) and the set of streams watching
 * each video (the viewer counter). Plain files with locks: enough for an
 * example; a real product would use its database.
 */
final class Store
{
    public function __construct(private readonly string $dir)
    {
        if (!is_dir($dir) && !@mkdir($dir, 0777, true) && !is_dir($dir)) {
            throw new \RuntimeException("cannot create data dir $dir");
        }
    }

    /** From LIVE_COMMENTS_DATA, else a folder in the system temp dir. */
    public static function fromEnv(): self
    {
        $dir = getenv('LIVE_COMMENTS_DATA');
        return new self(is_string($dir) && $dir !== '' ? $dir : sys_get_temp_dir() . '/switchboard-live-comments');
    }

    /** @param array{id:string,user:string,text:string,at:int} $comment */
    public function addComment(string $video, array $comment): void
    {
        file_put_contents(
            $this->path("comments-$video.jsonl"),
            json_encode($comment, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE) . "\n",
            FILE_APPEND | LOCK_EX,
        );
    }

    /**
     * The last $limit comments of a video, oldest first, each id once (a
     * retried lambda call may have stored one twice).
     *
     * @return list<array{id:string,user:string,text:string,at:int}>
     */
    public function recentComments(string $video, int $limit = 50): array
    {
        $path = $this->path("comments-$video.jsonl");
        if (!is_file($path)) {
            return [];
        }
        $byId = [];
        foreach (file($path, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [] as $line) {
            $c = json_decode($line, true);
            if (is_array($c) && is_string($c['id'] ?? null)) {
                $byId[$c['id']] ??= $c;
            }
        }
        return array_slice(array_values($byId), -$limit);
    }

    /** Adds or removes a watching stream; returns the number of viewers after. */
    public function viewer(string $video, string $streamId, bool $watching): int
    {
        $fh = fopen($this->path("viewers-$video.json"), 'c+');
        if ($fh === false) {
            throw new \RuntimeException('cannot open the viewers file');
        }
        try {
            flock($fh, LOCK_EX);
            $set = json_decode((string) stream_get_contents($fh), true);
            $set = is_array($set) ? $set : [];
            if ($watching) {
                $set[$streamId] = time();
            } else {
                unset($set[$streamId]);
            }
            ftruncate($fh, 0);
            rewind($fh);
            fwrite($fh, (string) json_encode((object) $set));
            return count($set);
        } finally {
            flock($fh, LOCK_UN);
            fclose($fh);
        }
    }

    private function path(string $name): string
    {
        return $this->dir . '/' . $name;
    }
}
