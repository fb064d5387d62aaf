// The pkarr npm package as a client of a relay.
//   node client.mjs put RELAY SEED_HEX TXT...   publishes TXT records at _sublog
//   node client.mjs get RELAY Z32_KEY           prints the verified packet as JSON
import { Pkarr, SignedPacket, generateKeyPair, z32 } from 'pkarr'

const [cmd, relay, arg, ...rest] = process.argv.slice(2)
if (cmd === 'put') {
  const keypair = generateKeyPair(Buffer.from(arg, 'hex'))
  const packet = {
    id: 0,
    type: 'response',
    flags: 0,
    answers: rest.map(data => ({ name: '_sublog', type: 'TXT', class: 'IN', ttl: 300, data }))
  }
  const sp = SignedPacket.fromPacket(keypair, packet)
  const res = await Pkarr.relayPut(relay, sp)
  if (!res.ok) {
    console.error('relay answered', res.status, await res.text())
    process.exit(1)
  }
  console.log(JSON.stringify({ key: z32.encode(keypair.publicKey), timestamp: sp.timestamp() }))
} else if (cmd === 'get') {
  const sp = await Pkarr.relayGet(relay, z32.decode(arg))
  const txt = sp.resourceRecords('_sublog').map(rr => Buffer.concat(rr.data).toString())
  console.log(JSON.stringify({ timestamp: sp.timestamp(), txt }))
} else {
  console.error('usage: client.mjs put|get ...')
  process.exit(2)
}
