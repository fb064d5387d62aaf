// Starts the pkarr npm package's HTTP relay on 127.0.0.1, backed by a
// two-node Mainline DHT that lives only on loopback (a storage node and the
// relay's own node), so nothing leaves the machine. Prints the relay URL on
// the first line of stdout and runs until stdin closes.
import os from 'os'
import path from 'path'
import fs from 'fs'
import _DHT from 'bittorrent-dht'
import sodium from 'sodium-universal'
import DHT from 'pkarr/lib/dht.js'
import Relay from 'pkarr/lib/relay.js'

const verify = sodium.crypto_sign_verify_detached
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pkarr-js-'))

const storage = new _DHT({ bootstrap: false, host: '127.0.0.1', verify })
await new Promise(resolve => storage.listen(0, '127.0.0.1', resolve))
const port = storage.address().port

const dht = new DHT({ bootstrap: ['127.0.0.1:' + port], storageLocation: tmp })
dht._dht.listen(0, '127.0.0.1')
await new Promise(resolve => dht._dht.once('ready', resolve))

const relay = new Relay({ dht })
await new Promise(resolve => relay._server.listen(0, '127.0.0.1', resolve))
console.log('http://127.0.0.1:' + relay.port)

process.stdin.resume()
process.stdin.on('end', async () => {
  relay._server.close()
  storage.destroy()
  await dht.destroy()
  fs.rmSync(tmp, { recursive: true, force: true })
  process.exit(0)
})
