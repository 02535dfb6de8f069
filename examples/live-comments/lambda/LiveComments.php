<?php

declare(strict_types=1);

namespace LiveComments;

use Switchboard\Actions;
use Switchboard\Deliver;
use Switchboard\Event\ClientMessage;
use Switchboard\Event\Close;
use Switchboard\Event\Message;
use Switchboard\Event\Open;
use Switchboard\Handler;

/**
 * Live video comments, the product of the BladeRunner design, as one
 * stateless handler. The gateway holds each viewer's stream and its state:
 * {video, user, lang, sent: [ms timestamps of recent posts]}.
 *
 * - open: validates the video id and the user name, picks the viewer's
 *   language, subscribes to the video's comments (through this lambda, with
 *   a delivery rate limit: nobody reads 1,000 comments a second) and to its
 *   viewer count (direct), and counts the viewer.
 * - client_message {"text","cid"}: a new comment. Rate limited per viewer
 *   (RATE_MAX per RATE_WINDOW_MS, kept in the stream state), stored, and
 *   published on the video's topic; {"lang":"fr"} switches the language.
 * - message: a comment for this viewer: translated and HTML-escaped, pushed
 *   as event "comment".
 * - close: uncounts the viewer.
 */
final class LiveComments extends Handler
{
    public const VIDEOS = [
        '1234' => 'Rocket launch, live from the pad',
        '42' => 'Cooking with Ada',
        '7' => 'Chess finals, game 7',
    ];
    public const RATE_MAX = 5;
    public const RATE_WINDOW_MS = 10_000;
    public const MAX_TEXT = 500;

    /** @var callable(): int */
    private $clock;

    public function __construct(private readonly Store $store, ?callable $clock = null)
    {
        $this->clock = $clock ?? static fn (): int => (int) floor(microtime(true) * 1000);
    }

    public static function commentTopic(string $video): string
    {
        return "live_video_comment/$video";
    }

    public static function viewersTopic(string $video): string
    {
        return "viewers/$video";
    }

    public function open(Open $event, Actions $do): void
    {
        $video = $event->param('video');
        if (!is_string($video) || !preg_match('/^[0-9]{1,16}$/', $video)) {
            $do->reject(400, 'video must be a numeric id');
            return;
        }
        if (!isset(self::VIDEOS[$video])) {
            $do->reject(404, "no live video $video");
            return;
        }
        $user = trim((string) $event->param('user', 'guest'));
        if (!preg_match('/^[\p{L}\p{N} _.-]{1,24}$/u', $user)) {
            $do->reject(400, 'user must be 1-24 letters, digits, spaces, _ . -');
            return;
        }
        $lang = Transform::pickLang($event->param('lang'), $event->header('accept-language'));
        $viewers = $this->store->viewer($video, $event->streamId(), true);
        $do->accept()
            ->subscribe(self::commentTopic($video), deliver: Deliver::Lambda, ratePerSecond: 20, rateBurst: 40, dedupWindowMs: 60_000)
            ->subscribe(self::viewersTopic($video), deliver: Deliver::Direct)
            ->setState(['video' => $video, 'user' => $user, 'lang' => $lang, 'sent' => []])
            ->push(['video' => $video, 'title' => self::VIDEOS[$video], 'user' => $user, 'lang' => $lang], event: 'hello')
            ->publish(self::viewersTopic($video), ['kind' => 'viewers', 'count' => $viewers]);
    }

    public function clientMessage(ClientMessage $event, Actions $do): void
    {
        $video = $event->state('video');
        $data = $event->data();
        if (!is_string($video) || !is_array($data)) {
            $do->push(['message' => 'send {"text": "..."}'], event: 'notice');
            return;
        }
        if (isset($data['lang'])) {
            $lang = Transform::pickLang($data['lang'], null);
            $do->mergeState(['lang' => $lang])->push(['lang' => $lang], event: 'lang');
            return;
        }
        $text = is_string($data['text'] ?? null) ? trim($data['text']) : '';
        if ($text === '' || strlen($text) > self::MAX_TEXT) {
            $do->push(['message' => 'a comment is 1-' . self::MAX_TEXT . ' bytes of text'], event: 'notice');
            return;
        }
        // The rate limit on the publish path: at most RATE_MAX comments per
        // RATE_WINDOW_MS per viewer, from the timestamps kept in the state.
        $now = ($this->clock)();
        $sent = array_values(array_filter(
            (array) $event->state('sent', []),
            fn ($t) => is_int($t) && $t > $now - self::RATE_WINDOW_MS,
        ));
        if (count($sent) >= self::RATE_MAX) {
            $do->mergeState(['sent' => $sent])
                ->push(['retry_after_ms' => $sent[0] + self::RATE_WINDOW_MS - $now, 'limit' => self::RATE_MAX], event: 'rate_limited');
            return;
        }
        $cid = $data['cid'] ?? null;
        $id = is_string($cid) && preg_match('/^[A-Za-z0-9_-]{1,40}$/', $cid)
            ? $cid
            : substr(hash('sha256', $event->streamId() . ':' . $now . ':' . $text), 0, 16);
        $comment = ['id' => $id, 'user' => (string) $event->state('user', 'guest'), 'text' => $text, 'at' => $now];
        $this->store->addComment($video, $comment);
        $sent[] = $now;
        // A retried call publishes the same comment once: the dedup key.
        $do->publish(self::commentTopic($video), $comment, dedupKey: $id)
            ->mergeState(['sent' => $sent]);
    }

    public function message(Message $event, Actions $do): void
    {
        $c = $event->data();
        if (!str_starts_with($event->topic(), 'live_video_comment/') || !is_array($c)
            || !is_string($c['id'] ?? null) || !is_string($c['text'] ?? null)) {
            return; // not a comment: nothing to show
        }
        $comment = [
            'id' => $c['id'],
            'user' => is_string($c['user'] ?? null) ? $c['user'] : 'guest',
            'text' => $c['text'],
            'at' => is_int($c['at'] ?? null) ? $c['at'] : 0,
        ];
        $do->push(Transform::forViewer($comment, (string) $event->state('lang', 'en')), event: 'comment');
    }

    public function close(Close $event, Actions $do): void
    {
        $video = $event->state('video');
        if (!is_string($video) || !isset(self::VIDEOS[$video])) {
            return;
        }
        $viewers = $this->store->viewer($video, $event->streamId(), false);
        $do->publish(self::viewersTopic($video), ['kind' => 'viewers', 'count' => $viewers]);
    }
}
